curl -X GET "https://mail.mailbux.com/api/dns/example.com" \
-H "Authorization: Bearer YOUR_TOKEN"
