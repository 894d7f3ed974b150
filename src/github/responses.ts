import type { Octokit } from '@octokit/core';
import { UnexpectedGitHubAnswerError } from './github-response.ts';

/**
 * Maximum bytes of one GitHub response body that Fixwright reads. The largest legitimate one is
 * a page of 100 pull request files, each with a diff within the 500 KB per file that GitHub's
 * "Repository limits" page states, an estimated 52 MB with JSON escapes. The blob of a file of
 * PREVIEW_MAX_FILE_BYTES (at most 10,000,000) is 13.8 MB as base64 with line breaks, and trees
 * are read one directory at a time.
 * NOTE: patches made mostly of characters that JSON escapes (quotes, backslashes, control
 * characters) could take a page of files past the limit, and its analysis then fails.
 */
export const maxGitHubResponseBytes = 64 * 1024 * 1024;

/**
 * Raised when the body of a GitHub success response is larger than the limit, before more of it
 * is read. It is no RequestError, so the retry plugin does not send the request again, because
 * the response would be as large the next time. An error response gets
 * `replaceOversizedErrorBody` instead.
 */
export class GitHubResponseTooLargeError extends UnexpectedGitHubAnswerError {
  override name = 'GitHubResponseTooLargeError';

  constructor(method: string, path: string, status: number, readonly maxBytes: number) {
    const problem = `the response is larger than the limit of ${formatBytes(maxBytes)}`;
    super(method, path, problem, status);
    this.message =
      `GitHub's response to ${method} ${path} is larger than the limit of ` +
      `${formatBytes(maxBytes)} that Fixwright reads.`;
  }
}

/**
 * Builds the response that Octokit gets in place of an error response (status 400 or more)
 * whose body is larger than `maxBytes`: the same status and headers with a short text body
 * that names the limit. Octokit then raises its usual RequestError with that text as the message, so
 * rate limits are still read from `retry-after` and `x-ratelimit-*`, and status checks such as
 * 404 work as for any error response.
 */
export function replaceOversizedErrorBody(
  response: Response,
  method: string,
  path: string,
  maxBytes: number,
): Response {
  const headers = new Headers(response.headers);
  headers.delete('content-length');
  headers.delete('content-encoding');
  headers.set('content-type', 'text/plain; charset=utf-8');
  const message =
    `GitHub's response to ${method} ${path} (HTTP ${response.status}) has a body larger than ` +
    `the limit of ${formatBytes(maxBytes)} that Fixwright reads, so only its status and ` +
    'headers are used.';
  const replaced = new Response(message, {
    status: response.status,
    statusText: response.statusText,
    headers,
  });
  // Octokit reports the URL of the response, which is the last one after redirects.
  Object.defineProperty(replaced, 'url', { value: response.url });
  return replaced;
}

/** Formats a byte count as `67108864 bytes (64 MiB)`, or without the MiB below one MiB. */
function formatBytes(bytes: number): string {
  const mebibytes = bytes / (1024 * 1024);
  if (mebibytes < 1) return `${bytes} bytes`;
  return `${bytes} bytes (${Math.round(mebibytes * 10) / 10} MiB)`;
}

/** Decodes UTF-8 as Response.text() does: a byte order mark is dropped, invalid bytes replaced. */
const utf8 = new TextDecoder();

/**
 * Returns the body as @octokit/request 10.0.16 (`getResponseData`) would, but parses JSON with
 * JSON.parse. Octokit parses with json-with-bigint, whose regular expression overflows the stack
 * on a JSON string of about 8 MB (Node.js 20.20.2, default stack size), after which Octokit
 * returns the body as text.
 * Numbers past 2^53 lose precision instead of becoming BigInts, and GitHub's ids stay below.
 */
function parseBody(bytes: Uint8Array, contentType: string | undefined): unknown {
  if (!contentType) return utf8.decode(bytes);
  const [mediaType = '', ...parameters] = contentType.split(';');
  const type = mediaType.trim().toLowerCase();
  if (type === 'application/json' || type === 'application/scim+json') {
    const text = utf8.decode(bytes);
    try {
      return JSON.parse(text);
    } catch {
      return text;
    }
  }
  const charset = parameters
    .map((parameter) => parameter.trim().toLowerCase())
    .find((parameter) => parameter.startsWith('charset='))
    ?.slice('charset='.length)
    .replaceAll('"', '');
  if (type.startsWith('text/') || (charset === 'utf-8' && type !== 'application/octet-stream')) {
    return utf8.decode(bytes);
  }
  return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}

/**
 * Octokit plugin that parses success responses with `parseBody` and raises a
 * GitHubResponseTooLargeError from the fetch as it is, not wrapped in a RequestError. A request
 * with `parseSuccessResponseBody: false` gets the body stream as Octokit returns it.
 * Register it before the retry and throttling plugins, so that they see what it raises.
 */
export function parseResponses(octokit: Octokit): void {
  // before-after-hook 4 binds one options object to every hook of a request, so a hook changes
  // the options by setting them on that object, not by passing new ones to `request()`. The
  // objects changed here are remembered, so that a retry of the request is parsed too.
  const parsedHere = new WeakSet<object>();
  octokit.hook.wrap('request', async (request, options) => {
    try {
      const unparsed = options.request?.parseSuccessResponseBody === false;
      if (unparsed && !parsedHere.has(options)) return await request(options);
      parsedHere.add(options);
      options.request = { ...options.request, parseSuccessResponseBody: false };
      const response = await request(options);
      // Without parsing, Octokit returns the fetch response's body stream, which timedFetch has
      // read whole and limited in size already. Responses without a body have `data: ""`.
      if (!(response.data instanceof ReadableStream)) return response;
      const bytes = new Uint8Array(await new Response(response.data).arrayBuffer());
      return { ...response, data: parseBody(bytes, response.headers['content-type']) };
    } catch (error) {
      // @octokit/request wraps what fetch raises in a RequestError with status 500, which the
      // retry plugin would retry.
      const cause = (error as { cause?: unknown }).cause;
      if (cause instanceof GitHubResponseTooLargeError) throw cause;
      throw error;
    }
  });
}
