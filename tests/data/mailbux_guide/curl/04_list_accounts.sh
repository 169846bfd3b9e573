curl -X GET "https://mail.mailbux.com/api/principal?types=individual" \
-H "Authorization: Bearer YOUR_TOKEN"
