import type { Octokit } from '@octokit/rest';
import { z } from 'zod';
import { TreeReader } from './tree-reader.ts';
import { gitObjectSha, parseGitHubResponse } from './github-response.ts';
import { isNotFound } from './request-errors.ts';

/** Default limit on the size of a file that `readFileAtRef` reads, in bytes. */
export const defaultMaxFileBytes = 1_000_000;

export interface RepositoryFile {
  /** File content decoded as UTF-8, byte for byte as stored (CRLF, BOM, final newline). */
  text: string;
  blobSha: string;
  /** Size in bytes. */
  size: number;
}

export type FileReadErrorReason =
  | 'directory'
  | 'too_large'
  | 'binary'
  | 'symlink'
  | 'submodule'
  | 'truncated';

/** Raised when a path exists at the ref but cannot be read as a text file. */
export class FileReadError extends Error {
  constructor(
    readonly reason: FileReadErrorReason,
    readonly path: string,
    message: string,
    /** Bytes downloaded before the file was rejected: those of binary or cut-off data, else 0. */
    readonly bytesRead = 0,
    /** Size in bytes that GitHub states for a `too_large` file, else null. */
    readonly size: number | null = null,
  ) {
    super(message);
    this.name = 'FileReadError';
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Git looks for NUL only in the first 8000 bytes, but a NUL anywhere counts here: PostgreSQL
 * text cannot store it, and a model cannot write it back unchanged.
 */
function isBinary(bytes: Buffer): boolean {
  return bytes.includes(0);
}

/**
 * Matches the 403 that the contents API has sent for a file over 1 MB, with an error of code
 * `too_large`, where its current documentation describes a response without content.
 */
function isContentsTooLarge(error: unknown): boolean {
  if (!(error instanceof Error) || (error as { status?: unknown }).status !== 403) return false;
  const data = (error as { response?: { data?: unknown } }).response?.data;
  const errors = (data as { errors?: unknown } | undefined)?.errors;
  return (
    Array.isArray(errors) &&
    errors.some((entry) => (entry as { code?: unknown } | null)?.code === 'too_large')
  );
}

/** Decodes GitHub's base64, which may contain line breaks. */
function decodeBase64(content: string): Buffer {
  return Buffer.from(content.replace(/\s+/g, ''), 'base64');
}

/**
 * The fields of the contents API's response for a path that is not a directory (schemas
 * `content-file`, `content-symlink` and `content-submodule` in @octokit/openapi-types 29) that
 * a file read uses. `content` is optional, although `content-file` requires it, because a file
 * over 1 MB may come without it and is then read as a blob. GitHub resolves a symlink to a file
 * and returns that file, so `symlink` is a symlink whose target is not a file.
 */
const contentsSchema = z.discriminatedUnion('type', [
  z.object({
    type: z.literal('file'),
    size: z.number().int().nonnegative(),
    sha: gitObjectSha('blob'),
    encoding: z.string(),
    content: z.string().optional(),
  }),
  z.object({ type: z.literal('symlink') }),
  z.object({ type: z.literal('submodule') }),
]);

/**
 * The fields of the blob API's response that a file read uses (schema `blob` in
 * @octokit/openapi-types 29). GitHub's former API docs (developer.github.com, Git Blobs) name
 * `utf-8` and `base64` as the encodings of a blob response.
 */
const blobSchema = z.object({
  content: z.string(),
  encoding: z.enum(['base64', 'utf-8']),
});

/**
 * Reads a git blob's bytes. The app's Octokit parses the response with JSON.parse
 * (parseResponses), because Octokit's own parser (json-with-bigint) blocked the event loop
 * about ten times as long for a 4.5 MB file. An invalid response, such as a proxy's HTML page,
 * raises UnexpectedGitHubAnswerError.
 */
async function readBlobBytes(
  octokit: Octokit,
  target: { owner: string; repo: string },
  sha: string,
): Promise<Buffer> {
  const response = await octokit.rest.git.getBlob({
    owner: target.owner,
    repo: target.repo,
    file_sha: sha,
  });
  const { content, encoding } = parseGitHubResponse(blobSchema, 'GET', response);
  if (encoding === 'utf-8') return Buffer.from(content, 'utf8');
  return decodeBase64(content);
}

/**
 * Reads a text file at a commit, branch or tag through the contents API. Returns null when
 * nothing exists at the path, and raises `FileReadError` for directories, symlinks that GitHub
 * does not resolve to a file, submodules, files over `maxBytes` (default 1,000,000), binary
 * or non-UTF-8 data, and data shorter or longer than the size GitHub reports. Files over 1 MB
 * come without content or with a 403 `too_large`, and are read as a git blob instead, as is
 * inline content of the wrong size. A response of either API that lacks or mistypes a field
 * that the read uses raises UnexpectedGitHubAnswerError.
 */
export async function readFileAtRef(
  octokit: Octokit,
  target: { owner: string; repo: string; path: string; ref: string; maxBytes?: number },
): Promise<RepositoryFile | null> {
  const { owner, repo, path, ref } = target;
  const maxBytes = target.maxBytes ?? defaultMaxFileBytes;

  let response;
  try {
    response = await octokit.rest.repos.getContent({ owner, repo, path, ref });
  } catch (error) {
    if (isNotFound(error)) {
      return null;
    }
    if (isContentsTooLarge(error)) {
      return readThroughTree(octokit, { ...target, maxBytes });
    }
    throw error;
  }

  // The contents API lists a directory as an array of its entries.
  if (Array.isArray(response.data)) {
    throw new FileReadError('directory', path, `${path} at ${ref} is a directory, not a file`);
  }
  const data = parseGitHubResponse(contentsSchema, 'GET', response);
  if (data.type === 'symlink') {
    const message = `${path} at ${ref} is a symlink whose target is not a file`;
    throw new FileReadError('symlink', path, message);
  }
  if (data.type === 'submodule') {
    throw new FileReadError('submodule', path, `${path} at ${ref} is a submodule`);
  }
  if (data.size > maxBytes) {
    throw tooLargeError(target, data.size, maxBytes);
  }

  // Above 1 MB the contents API sends `encoding: 'none'` and no content.
  const content = data.content;
  const inline =
    data.encoding === 'base64' && content !== undefined && (content !== '' || data.size === 0);
  let bytes = inline ? decodeBase64(content) : await readBlobBytes(octokit, target, data.sha);
  if (inline && bytes.length !== data.size) {
    // The inline content was cut off, so the blob API gets a second chance to send the bytes.
    bytes = await readBlobBytes(octokit, target, data.sha);
  }
  return decodeText(bytes, { path, ref, size: data.size, blobSha: data.sha });
}

function tooLargeError(
  target: { path: string; ref: string },
  size: number,
  maxBytes: number,
): FileReadError {
  const { path, ref } = target;
  const message = `${path} at ${ref} has ${size} bytes, over the limit of ${maxBytes}`;
  return new FileReadError('too_large', path, message, 0, size);
}

/**
 * Reads a file that the contents API rejected as too large: its blob sha and size come from the
 * git tree at `ref`, one directory level per request, and its bytes from the blob API.
 */
async function readThroughTree(
  octokit: Octokit,
  target: { owner: string; repo: string; path: string; ref: string; maxBytes: number },
): Promise<RepositoryFile | null> {
  const { owner, repo, path, ref, maxBytes } = target;
  let entry;
  try {
    entry = await new TreeReader(octokit, { owner, repo }, ref).find(path);
  } catch (error) {
    if (isNotFound(error)) return null;
    throw error;
  }
  if (!entry?.sha) return null;
  if (entry.type === 'tree') {
    throw new FileReadError('directory', path, `${path} at ${ref} is a directory, not a file`);
  }
  if (entry.type === 'commit') {
    throw new FileReadError('submodule', path, `${path} at ${ref} is a submodule`);
  }
  if (entry.mode === '120000') {
    // A symlink's blob is its target path, which the contents API would have resolved.
    throw new FileReadError('symlink', path, `${path} at ${ref} is a symlink to a large file`);
  }
  const size = entry.size ?? 0;
  if (size > maxBytes) {
    throw tooLargeError(target, size, maxBytes);
  }
  const bytes = await readBlobBytes(octokit, target, entry.sha);
  return decodeText(bytes, { path, ref, size, blobSha: entry.sha });
}

/** Checks the bytes of a file against its size and decodes them as UTF-8 text. */
function decodeText(
  bytes: Buffer,
  file: { path: string; ref: string; size: number; blobSha: string },
): RepositoryFile {
  const { path, ref } = file;
  if (bytes.length !== file.size) {
    const message =
      `${path} at ${ref}: GitHub reported ${file.size} bytes but sent ${bytes.length}`;
    throw new FileReadError('truncated', path, message, bytes.length);
  }
  if (isBinary(bytes)) {
    const message = `${path} at ${ref} is binary (contains a NUL byte)`;
    throw new FileReadError('binary', path, message, bytes.length);
  }

  let text: string;
  try {
    text = utf8.decode(bytes);
  } catch {
    // Text that is not UTF-8 could not be written back unchanged, so it counts as binary.
    throw new FileReadError('binary', path, `${path} at ${ref} is not valid UTF-8`, bytes.length);
  }
  return { text, blobSha: file.blobSha, size: bytes.length };
}
