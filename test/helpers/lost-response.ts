import type { FakeResponse, Route, RouteContext } from '../../src/demo/fakes/github/router.ts';
import type { FakeState } from '../../src/demo/fakes/github/state.ts';

/**
 * Returns `route` changed to return `failure` (502 unless given) after its handler did the work
 * while `pending[key]` is above 0, as when GitHub carries out a write and its response is lost
 * or a proxy replaces it. Each such response counts `pending[key]` down by one. A function
 * `failure` is called for each such response, so a test can change it.
 */
export function failAfterWork<Key extends string>(
  route: Route<FakeState>,
  pending: Record<Key, number>,
  key: Key,
  failure: FakeResponse | (() => FakeResponse) = { status: 502, body: { message: 'Server Error' } },
): Route<FakeState> {
  return {
    ...route,
    async handle(context: RouteContext<FakeState>): Promise<FakeResponse> {
      const response = await route.handle(context);
      if (pending[key] > 0 && response.status < 300) {
        pending[key] -= 1;
        return typeof failure === 'function' ? failure() : failure;
      }
      return response;
    },
  };
}
