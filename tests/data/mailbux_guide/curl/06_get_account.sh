curl -X GET "https://mail.mailbux.com/api/principal/agent@example.com" \
-H "Authorization: Bearer YOUR_TOKEN"
