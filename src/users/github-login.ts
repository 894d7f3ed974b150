import { countCharacters } from '../text/character-count.ts';

/** Maximum length of a GitHub login. GitHub's sign-up form rejects longer usernames. */
export const maxLoginLength = 39;

/**
 * Checks the length and characters of a GitHub login. Returns what is wrong, as the end of a
 * sentence that names the login, or null when the login is valid. App logins such as
 * `dependabot[bot]` pass as they are.
 */
export function describeLoginProblem(login: string): string | null {
  if (login.endsWith('[bot]')) return null;
  const loginLength = countCharacters(login);
  const tooLong = loginLength > maxLoginLength;
  const badCharacters = !/^[A-Za-z0-9][A-Za-z0-9-]*$/.test(login);
  const length = `it is ${loginLength} characters long, but GitHub logins are at most ${maxLoginLength}`;
  const characters = 'letters, digits and hyphens, starting with a letter or digit';
  if (tooLong && badCharacters) return `${length}, and they are ${characters}`;
  if (tooLong) return length;
  if (badCharacters) return `GitHub logins are ${characters}`;
  return null;
}
