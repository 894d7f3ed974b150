/**
 * Base URLs of GitHub and the model providers for tests that start no fake of them: a closed
 * port on 127.0.0.1, so a request that a test did not expect fails at once and never leaves
 * the machine. Test contexts, commands and service processes start from these, and a test that starts a
 * fake passes its URL over them.
 */
export const offlineBaseUrls = {
  GITHUB_API_URL: 'http://127.0.0.1:9',
  GITHUB_URL: 'http://127.0.0.1:9',
  GROQ_BASE_URL: 'http://127.0.0.1:9',
  GEMINI_BASE_URL: 'http://127.0.0.1:9',
} as const;
