curl -X DELETE "https://mail.mailbux.com/api/principal/example.com" \
-H "Authorization: Bearer YOUR_TOKEN"
