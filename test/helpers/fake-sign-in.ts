/**
 * Signs in to the dashboard at `dashboard` through the OAuth flow of the fake GitHub, which
 * signs in at once as the account that `signInAs` set. Follows up to 5 redirects and throws
 * when one leaves 127.0.0.1. Returns the session's Cookie header and the URL where the
 * redirects ended, which is `dashboard` after a successful sign-in.
 */
export async function signInThroughFakeGitHub(dashboard: string): Promise<{ cookie: string; endUrl: string }> {
  const cookies = new Map<string, string>();
  const cookieHeader = () => [...cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  let url = new URL('/auth/github', dashboard).toString();
  for (let hop = 0; hop < 5; hop += 1) {
    const response = await fetch(url, { redirect: 'manual', headers: { cookie: cookieHeader() } });
    for (const header of response.headers.getSetCookie()) {
      const [pair = ''] = header.split(';');
      const index = pair.indexOf('=');
      cookies.set(pair.slice(0, index), pair.slice(index + 1));
    }
    const location = response.headers.get('location');
    if (!location) break;
    const next = new URL(location, url);
    if (next.hostname !== '127.0.0.1') throw new Error(`The sign-in redirected to ${next.href}, off 127.0.0.1.`);
    url = next.toString();
  }
  return { cookie: cookieHeader(), endUrl: url };
}
