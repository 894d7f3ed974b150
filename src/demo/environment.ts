/**
 * Environment of the processes the demo starts. It is built from scratch, so no credential,
 * base URL or database of the calling shell reaches them: only the variables below are copied.
 */

/** Variables copied from the demo's own environment: where programs, home and temp files are. */
const inheritedVariables = ['PATH', 'HOME', 'TMPDIR', 'LANG', 'LC_ALL', 'TZ', 'SYSTEMROOT'];

/**
 * Settings that would make the service reach a real GitHub, provider or database, or use the
 * operator's secrets. The demo sets its own values for them and reports which ones it ignored.
 */
const replacedVariables = [
  'DATABASE_URL',
  'DATA_DIR',
  'APP_ID',
  'PRIVATE_KEY',
  'PRIVATE_KEY_PATH',
  'WEBHOOK_SECRET',
  'GITHUB_CLIENT_ID',
  'GITHUB_CLIENT_SECRET',
  'GITHUB_API_URL',
  'GITHUB_URL',
  'GROQ_API_KEY',
  'GROQ_BASE_URL',
  'GEMINI_API_KEY',
  'GEMINI_BASE_URL',
  'MASTER_KEY',
  'MASTER_KEYS',
  'PUBLIC_URL',
  'HOST',
  'PORT',
];

/** Returns the names of `replacedVariables` that are set in `env`, which the demo ignores. */
export function ignoredVariables(env: NodeJS.ProcessEnv): string[] {
  return replacedVariables.filter((name) => env[name] !== undefined && env[name] !== '');
}

/** Builds a child environment: the inherited variables of `env` plus `settings`. */
export function childEnvironment(
  env: NodeJS.ProcessEnv,
  settings: Record<string, string>,
): NodeJS.ProcessEnv {
  const child: NodeJS.ProcessEnv = {};
  for (const name of inheritedVariables) {
    if (env[name] !== undefined) child[name] = env[name];
  }
  return { ...child, ...settings };
}
