curl -X POST "https://mail.mailbux.com/api/principal" \
-H "Authorization: Bearer YOUR_TOKEN" \
-H "Content-Type: application/json" \
-d '{
"name": "example.com",
"type": "domain"
}'
