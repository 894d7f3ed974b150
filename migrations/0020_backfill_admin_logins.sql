-- Admins at the time of the upgrade keep their role: each admin signed in through GitHub gets
-- their current login recorded for their GitHub id, as their next sign-in would record it.
-- A login recorded already, or held by two admins in different case, keeps its first row.
INSERT INTO admin_logins (login, github_id)
SELECT lower(login), github_id FROM users
WHERE role = 'admin' AND github_id IS NOT NULL
ORDER BY created_at
ON CONFLICT (login) DO NOTHING;
