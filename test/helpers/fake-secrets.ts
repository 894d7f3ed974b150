/**
 * Secrets in their real formats for the secret rules' tests. Each was made up for the tests and
 * grants nothing: the tokens are random letters and digits, and the JWT is signed with a key that
 * nothing else uses.
 */
export const fakeSecrets = {
  githubToken: 'ghp_K0ONuqO4DCWzTQ9Bl95cvCBQziB0euQFynca',
  githubFineGrainedToken:
    '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',
  stripeSecretKey: 'sk_live_51NzQ8rHv2Lk7TmWc3XpJd9Ye',
  slackBotToken: 'xoxb-2418653027-5907214836152-Qh7TmZr2LwVx9NcK4pYb6EsJ',
  slackWebhookPath: 'T03KQ8ZP2/B05FGHJ2K9L/q8Wm3Zr7TxLv2NcY5pKb9HsD',
  /** HS256, with the claims `{"sub":"user_8f14e45f","iat":1767225600,"exp":1767229200}`. */
  jwt:
    'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.' +
    'eyJzdWIiOiJ1c2VyXzhmMTRlNDVmIiwiaWF0IjoxNzY3MjI1NjAwLCJleHAiOjE3NjcyMjkyMDB9.' +
    'CHqLlPINoVurEFXKzjH4HC9o_9E6tw7QxuMiuDXR8GI',
  databasePassword: 'S3cretPassw0rd!',
};
