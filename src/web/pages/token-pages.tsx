import { Hono } from 'hono';
import type { AppContext } from '../../context.ts';
import { isUuid } from '../../runs/visible-runs.ts';
import {
  listApiTokens,
  maxTokenNameLength,
  mintApiToken,
  revokeApiToken,
  TokenLimitError,
} from '../../users/api-tokens.ts';
import { AppError, notFound } from '../errors.ts';
import type { PageVariables } from '../session/page-variables.ts';
import { requirePageSession } from '../session/require-page-session.ts';
import { TokensPage } from '../views/tokens.tsx';

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
    const body = await c.req.parseBody();
    const name = typeof body.name === 'string' ? body.name.trim() : '';
    if (name === '' || name.length > maxTokenNameLength) {
      throw new AppError('bad_request', `Invalid token name: give 1 to ${maxTokenNameLength} characters.`);
    }
    const { id, token } = await mintApiToken(context.db, c.var.user.id, name).catch((error) => {
      if (error instanceof TokenLimitError) throw new AppError('conflict', error.message);
      throw error;
    });
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
