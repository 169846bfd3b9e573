curl -X POST "https://mail.mailbux.com/api/dkim" \
-H "Authorization: Bearer YOUR_TOKEN" \
-H "Content-Type: application/json" \
-d '{
"id": "example.com",
"algorithm": "ed25519-sha256",
"domain": "example.com",
"selector": "mailbux"
}'
