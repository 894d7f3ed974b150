import type { Child, FC } from 'hono/jsx';
import { raw } from 'hono/html';
import type { ActiveSession } from '../session/session-store.ts';
import { CsrfField } from './components/csrf-field.tsx';

/**
 * htmx settings. Error responses are swapped in too, because the server renders them as
 * readable fragments. Eval and inline indicator styles are off, as the Content-Security-Policy
 * forbids them.
 */
const htmxConfig = JSON.stringify({
  responseHandling: [
    { code: '204', swap: false },
    { code: '[23]..', swap: true },
    { code: '[45]..', swap: true, error: true },
  ],
  includeIndicatorStyles: false,
  allowEval: false,
  allowScriptTags: false,
  selfRequestsOnly: true,
});

const navigation = [
  { href: '/', label: 'Home' },
  { href: '/plans', label: 'Plan' },
  { href: '/tokens', label: 'Tokens' },
  { href: '/keys', label: 'Keys' },
];

/** The page frame: head, navigation with sign-out, and the CSRF token for htmx requests. */
export const Layout: FC<{ title: string; session?: ActiveSession | null; children?: Child }> = ({
  title,
  session,
  children,
}) => (
  <>
    {raw('<!doctype html>')}
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <title>{`${title} · Fixwright`}</title>
        {session ? <meta name="csrf-token" content={session.csrfToken} /> : null}
        <meta name="htmx-config" content={htmxConfig} />
        <link rel="stylesheet" href="/public/app.css" />
        <script src="/public/htmx.min.js" defer></script>
        <script src="/public/app.js" defer></script>
      </head>
      <body
        hx-headers={session ? JSON.stringify({ 'X-CSRF-Token': session.csrfToken }) : undefined}
      >
        <header class="topbar">
          <a class="brand" href="/">
            Fixwright
          </a>
          {session ? (
            <>
              <nav aria-label="Main">
                {navigation.map((item) => (
                  <a href={item.href}>{item.label}</a>
                ))}
              </nav>
              <form class="sign-out" method="post" action="/sign-out">
                <CsrfField session={session} />
                <span class="login">
                  {session.user.login}
                  {session.user.role === 'admin' ? ' (admin)' : ''}
                </span>
                <button type="submit" class="link-button">
                  Sign out
                </button>
              </form>
            </>
          ) : null}
        </header>
        <main>{children}</main>
      </body>
    </html>
  </>
);
