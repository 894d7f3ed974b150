import { countCharacters } from '../text/character-count.ts';

/** Maximum length of a GitHub login. GitHub's sign-up form rejects longer usernames. */
export const maxLoginLength = 39;

/**
 * Maximum length of a GitHub App's slug, the part of its bot login before `[bot]`. GitHub's
 * "Registering a GitHub App" page limits app names to 34 characters, and the slug is the name
 * in lowercase, with spaces replaced by hyphens and special characters replaced.
 * NOTE: GitHub documents the limit of the name, not of the slug, so an app registered before
 * that limit might have a longer slug.
 */
export const maxAppSlugLength = 34;

const botSuffix = '[bot]';

/**
 * Form of a login that upsertGitHubUser renamed to `LOGIN~ID` because GitHub gave the login to
 * another account. ID is the user's GitHub id, or its user id (a UUID) when it has none.
 */
const releasedLoginPattern =
  /^(.+)~(\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/i;

/**
 * Checks the length and characters of a GitHub login. Returns what is wrong, as the end of a
 * sentence that names the login, or null when the login is valid. An app's login such as
 * `dependabot[bot]` is checked as its slug followed by `[bot]`.
 */
export function describeLoginProblem(login: string): string | null {
  if (login.endsWith(botSuffix)) return describeAppSlugProblem(login.slice(0, -botSuffix.length));
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

function describeAppSlugProblem(slug: string): string | null {
  const slugLength = countCharacters(slug);
  const tooLong = slugLength > maxAppSlugLength;
  const badCharacters = !/^[a-z0-9][a-z0-9-]*$/.test(slug);
  const length =
    `its app slug before "${botSuffix}" is ${slugLength} characters long, but GitHub App ` +
    `slugs are at most ${maxAppSlugLength}`;
  const characters = 'lowercase letters, digits and hyphens, starting with a letter or digit';
  if (tooLong && badCharacters) return `${length}, and they are ${characters}`;
  if (tooLong) return length;
  if (badCharacters) {
    return `an app's login is its GitHub App slug followed by "${botSuffix}", and slugs are ${characters}`;
  }
  return null;
}

/** Returns the former login of a login renamed to `LOGIN~ID`, or null for any other login. */
export function formerLoginOf(login: string): string | null {
  return releasedLoginPattern.exec(login)?.[1] ?? null;
}
