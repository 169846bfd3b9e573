curl -X POST "https://mail.mailbux.com/api/principal" \
-H "Authorization: Bearer YOUR_TOKEN" \
-H "Content-Type: application/json" \
-d '{
"name": "sales@example.com",
"type": "list",
"members": ["agent@example.com"]
}'
