curl -X POST "https://mail.mailbux.com/api/principal" \
-H "Authorization: Bearer YOUR_TOKEN" \
-H "Content-Type: application/json" \
-d '{
"name": "agent@example.com",
"type": "individual",
"secrets": ["SecurePassword123!"],
"emails": ["agent@example.com"]
}'
