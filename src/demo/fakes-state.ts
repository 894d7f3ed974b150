import { createPublicKey, randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { generateAppKeyPair, type AppKeyPair, type IssuedToken } from './fakes/github.ts';

/**
 * The settings of examples/start-fakes.mts that a service stores or is configured with: the
 * app's secrets and the fakes' ports. A start with `--state DIR` reuses them, so a service that
 * kept running, and its database, still match the fakes after a restart.
 */
export interface FakesSettings {
  appId: string;
  webhookSecret: string;
  clientId: string;
  clientSecret: string;
  /** The platform Groq key. The fake Groq accepts any key without "revoked" in it. */
  groqKey: string;
  /** Ports on 127.0.0.1 of the fakes, each 0 until the first start picks a free one. */
  ports: { github: number; groq: number; gemini: number };
}

/** The file in the state folder that stores FakesSettings as JSON. */
export const fakesStateFile = 'fakes.json';
/** The file in the state folder with the installation tokens that the fake GitHub issued. */
export const tokensFile = 'tokens.json';
/** The file in the fakes' folder with the app's private key, which PRIVATE_KEY_PATH names. */
export const privateKeyFile = 'app-private-key.pem';
/** The prefix of the git repository's folder inside the fakes' folder. */
export const repositoryFolderPrefix = 'fixwright-git-';

const port = z.number().int().min(0).max(65_535);
const storedSettings = z.object({
  appId: z.string().regex(/^[0-9]+$/),
  webhookSecret: z.string().min(1),
  clientId: z.string().min(1),
  clientSecret: z.string().min(1),
  groqKey: z.string().min(1),
  ports: z.object({ github: port, groq: port, gemini: port }),
});

/** Returns new random secrets for `appId`, with ports still to pick. */
export function newFakesSettings(appId: string): FakesSettings {
  return {
    appId,
    webhookSecret: randomBytes(32).toString('hex'),
    clientId: `Iv1.fakes${randomBytes(6).toString('hex')}`,
    clientSecret: randomBytes(20).toString('hex'),
    groqKey: `gsk_fakes_${randomBytes(16).toString('hex')}`,
    ports: { github: 0, groq: 0, gemini: 0 },
  };
}

/** The state that a start with `--state` found, or null for a new or empty folder. */
export interface StoredFakes {
  settings: FakesSettings;
  keys: AppKeyPair;
  /** The folder of the git repository, or null when the folder has none. */
  repositoryDir: string | null;
  /** The installation tokens issued before that have not expired. */
  tokens: IssuedToken[];
}

const storedTokens = z.array(
  z.object({ token: z.string().min(1), installationId: z.number().int().positive(), expiresAt: z.iso.datetime() }),
);

/**
 * Creates `folder` when it is missing and reads the state that an earlier start stored there.
 * Returns null for a new or empty folder. Throws an error that names the folder for a folder
 * with other files but no state, so that a mistyped path never receives the fakes' files, and
 * for a state file or private key that cannot be read.
 */
export async function readFakesState(folder: string): Promise<StoredFakes | null> {
  await mkdir(folder, { recursive: true, mode: 0o700 });
  const entries = await readdir(folder);
  const startAgain = `Remove ${folder} or give another --state folder to start with new fakes.`;
  if (!entries.includes(fakesStateFile)) {
    if (entries.length === 0) return null;
    throw new Error(
      `The --state folder ${folder} is not empty and has no ${fakesStateFile}, so it is not a ` +
        'folder of the fakes. Give a new or empty folder.',
    );
  }

  const stateFile = path.join(folder, fakesStateFile);
  let settings: FakesSettings;
  try {
    settings = storedSettings.parse(JSON.parse(await readFile(stateFile, 'utf8')));
  } catch (error) {
    const detail = error instanceof z.ZodError ? z.prettifyError(error) : (error as Error).message;
    throw new Error(`Invalid ${stateFile}: ${detail}. ${startAgain}`);
  }
  const keyFile = path.join(folder, privateKeyFile);
  let keys: AppKeyPair;
  try {
    const privateKeyPem = await readFile(keyFile, 'utf8');
    const publicKeyPem = createPublicKey(privateKeyPem).export({ type: 'spki', format: 'pem' }).toString();
    keys = { privateKeyPem, publicKeyPem };
  } catch (error) {
    throw new Error(`Reading the private key ${keyFile} failed: ${(error as Error).message}. ${startAgain}`);
  }
  const repository = entries.filter((entry) => entry.startsWith(repositoryFolderPrefix)).sort()[0];
  const repositoryDir = repository ? path.join(folder, repository) : null;
  return { settings, keys, repositoryDir, tokens: await readIssuedTokens(folder) };
}

/**
 * Reads the unexpired tokens of the tokens file in `folder`, or none when the file is missing or
 * invalid. A service whose cached token the fake then rejects gets 401 until it requests a new
 * token, which @octokit/auth-app 8.3 does when its cached token is 59 minutes old.
 */
async function readIssuedTokens(folder: string): Promise<IssuedToken[]> {
  let text: string;
  try {
    text = await readFile(path.join(folder, tokensFile), 'utf8');
  } catch {
    return [];
  }
  let parsed: z.infer<typeof storedTokens>;
  try {
    parsed = storedTokens.parse(JSON.parse(text));
  } catch {
    return [];
  }
  const tokens = parsed.map((token) => ({ ...token, expiresAt: new Date(token.expiresAt) }));
  return tokens.filter((token) => token.expiresAt.getTime() > Date.now());
}

/** Writes the installation tokens to `folder`, readable by its owner only. */
export async function writeIssuedTokens(folder: string, tokens: IssuedToken[]): Promise<void> {
  await writeFile(path.join(folder, tokensFile), JSON.stringify(tokens) + '\n', { mode: 0o600 });
}

/** Writes `settings` to the state file of `folder`, readable by its owner only. */
export async function writeFakesState(folder: string, settings: FakesSettings): Promise<void> {
  await writeFile(path.join(folder, fakesStateFile), JSON.stringify(settings, null, 2) + '\n', { mode: 0o600 });
}

/** Generates the app's key pair and writes the private key to `folder`. Returns both keys. */
export async function writeNewAppKey(folder: string): Promise<AppKeyPair> {
  const keys = generateAppKeyPair();
  await writeFile(path.join(folder, privateKeyFile), keys.privateKeyPem, { mode: 0o600 });
  return keys;
}
