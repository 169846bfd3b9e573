curl -X POST "https://mail.mailbux.com/api/principal" \
-H "Authorization: Bearer YOUR_TOKEN" \
-H "Content-Type: application/json" \
-d '{
"name": "forward@example.com",
"type": "list",
"members": ["external@gmail.com"]
}'
