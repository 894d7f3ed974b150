import type { FC } from 'hono/jsx';

/** The landing page; until the app is configured it lists what to set. */
export const HomePage: FC<{ missing: string[] }> = ({ missing }) => (
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>Fixwright</title>
    </head>
    <body>
      <main>
        <h1>Fixwright</h1>
        <p>Reports problems in pull requests and previews fixes written by a model.</p>
        {missing.length > 0 ? (
          <section>
            <h2>Configuration needed</h2>
            <p>Set these environment variables and restart:</p>
            <ul>
              {missing.map((line) => (
                <li>{line}</li>
              ))}
            </ul>
          </section>
        ) : (
          <p>Configured and receiving webhooks at <code>/webhooks/github</code>.</p>
        )}
      </main>
    </body>
  </html>
);
