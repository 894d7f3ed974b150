import type { Octokit } from '@octokit/core';

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
 * Octokit plugin that parses success responses with `parseBody`. A request with
 * `parseSuccessResponseBody: false` gets the body stream as Octokit returns it.
 */
export function parseResponses(octokit: Octokit): void {
  // before-after-hook 4 binds one options object to every hook of a request, so a hook changes
  // the options by setting them on that object, not by passing new ones to `request()`. The
  // objects changed here are remembered, so that a retry of the request is parsed too.
  const parsedHere = new WeakSet<object>();
  octokit.hook.wrap('request', async (request, options) => {
    const unparsed = options.request?.parseSuccessResponseBody === false;
    if (unparsed && !parsedHere.has(options)) return request(options);
    parsedHere.add(options);
    options.request = { ...options.request, parseSuccessResponseBody: false };
    const response = await request(options);
    // Without parsing, Octokit returns the fetch response's body stream, which timedFetch has
    // read whole already. Responses without a body have `data: ""`.
    if (!(response.data instanceof ReadableStream)) return response;
    const bytes = new Uint8Array(await new Response(response.data).arrayBuffer());
    return { ...response, data: parseBody(bytes, response.headers['content-type']) };
  });
}
