/**
 * Base URLs of GitHub and the model providers on a closed 127.0.0.1 port. A request that a test
 * did not expect fails at once and stays on the machine. Test contexts, commands and service
 * processes start from these, and a test that starts a fake sets its URL over them.
 */
export const offlineBaseUrls = {
  GITHUB_API_URL: 'http://127.0.0.1:9',
  GITHUB_URL: 'http://127.0.0.1:9',
  GROQ_BASE_URL: 'http://127.0.0.1:9',
  GEMINI_BASE_URL: 'http://127.0.0.1:9',
} as const;
