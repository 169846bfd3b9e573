curl -X GET "https://mail.mailbux.com/api/principal?types=domain" \
-H "Authorization: Bearer YOUR_TOKEN"
