curl -X PATCH "https://mail.mailbux.com/api/principal/agent@example.com" \
-H "Authorization: Bearer YOUR_TOKEN" \
-H "Content-Type: application/json" \
-d '{
"secrets": ["NewSecurePassword456!"],
"description": "Updated AI agent"
}'
