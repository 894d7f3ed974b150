import { Hono } from 'hono';
import type { AppContext } from '../../context.ts';
import { isUuid } from '../../runs/visible-runs.ts';
import { countCharacters } from '../../text/character-count.ts';
import {
  listApiTokens,
  maxTokenNameLength,
  mintApiToken,
  revokeApiToken,
  TokenLimitError,
} from '../../users/api-tokens.ts';
import { notFound } from '../errors.ts';
import { FormFieldError, readOptionalTextField } from '../session/form-body.ts';
import type { PageVariables } from '../session/page-variables.ts';
import { requirePageSession } from '../session/require-page-session.ts';
import { TokensPage } from '../views/tokens.tsx';

/**
 * Returns why a token name, trimmed of spaces, cannot be stored and what to type instead, or
 * null for a valid name. PostgreSQL rejects text with NUL characters.
 */
function describeInvalidTokenName(name: string): string | null {
  const retry = 'press "Create token" again.';
  if (name === '') {
    return (
      'Invalid token name: it is empty or only spaces. Type a name of 1 to ' +
      `${maxTokenNameLength} characters that says where the token is used, such as "CI script", and ${retry}`
    );
  }
  const length = countCharacters(name);
  if (length > maxTokenNameLength) {
    return (
      `Invalid token name: it has ${length} characters. Shorten it to at most ` +
      `${maxTokenNameLength} characters and ${retry}`
    );
  }
  if (name.includes('\u0000')) {
    return `Invalid token name: it must not contain NUL (U+0000) characters. Remove them and ${retry}`;
  }
  return null;
}

/** `GET /tokens`, `POST /tokens` (create, shows the token once) and `POST /tokens/:id/revoke`. */
export function tokenPages(context: AppContext): Hono<{ Variables: PageVariables }> {
  const app = new Hono<{ Variables: PageVariables }>();
  app.use('/tokens', requirePageSession(context));
  app.use('/tokens/*', requirePageSession(context));

  app.get('/tokens', async (c) => {
    const tokens = await listApiTokens(context.db, c.var.user.id);
    return c.html(<TokensPage session={c.var.session} tokens={tokens} />);
  });

  app.post('/tokens', async (c) => {
    const form = await c.req.parseBody({ all: true });
    // Bad input shows the tokens page again with the message next to the form and the name
    // as typed, so the user can correct it there.
    const showFormError = async (typed: string, error: string, status: 400 | 409) => {
      context.logger.info(
        { event: 'api_token.rejected', requestId: c.get('requestId'), userId: c.var.user.id, status, reason: error },
        'personal access token not created',
      );
      const tokens = await listApiTokens(context.db, c.var.user.id);
      return c.html(
        <TokensPage
          session={c.var.session}
          tokens={tokens}
          form={{ name: typed, error, nameInvalid: status === 400 }}
        />,
        status,
      );
    };
    let typed: string;
    try {
      typed = readOptionalTextField(form, 'name', 'type the name into the form and press "Create token" again.') ?? '';
    } catch (error) {
      if (!(error instanceof FormFieldError)) throw error;
      return showFormError('', error.message, 400);
    }
    const name = typed.trim();
    const invalid = describeInvalidTokenName(name);
    if (invalid) return showFormError(typed, invalid, 400);

    let minted;
    try {
      minted = await mintApiToken(context.db, c.var.user.id, name);
    } catch (error) {
      if (error instanceof TokenLimitError) return showFormError(typed, error.message, 409);
      throw error;
    }
    const { id, token } = minted;
    context.logger.info(
      { event: 'api_token.created', requestId: c.get('requestId'), userId: c.var.user.id, tokenId: id },
      'personal access token created',
    );
    const tokens = await listApiTokens(context.db, c.var.user.id);
    // The page carries the token itself, so no cache may keep it.
    c.header('Cache-Control', 'no-store');
    return c.html(<TokensPage session={c.var.session} tokens={tokens} created={{ name, token }} />);
  });

  app.post('/tokens/:id/revoke', async (c) => {
    const id = c.req.param('id');
    const revoked = isUuid(id) && (await revokeApiToken(context.db, { userId: c.var.user.id, tokenId: id }));
    if (!revoked) throw notFound('Token', id);
    context.logger.info(
      { event: 'api_token.revoked', requestId: c.get('requestId'), userId: c.var.user.id, tokenId: id },
      'personal access token revoked',
    );
    return c.redirect('/tokens', 303);
  });

  return app;
}
