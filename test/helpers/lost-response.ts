import type { FakeResponse, Route, RouteContext } from '../../src/demo/fakes/github/router.ts';
import type { FakeState } from '../../src/demo/fakes/github/state.ts';
import { gitDataRoutes } from '../../src/demo/fakes/github/git-data.ts';
import { reviewRoutes } from '../../src/demo/fakes/github/reviews.ts';

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

/**
 * Routes the fake GitHub's ref updates and posted reviews through `failAfterWork`: while
 * `pending.ref` or `pending.review` is above 0, the write takes effect and its response is
 * `failure()` (502 unless given).
 */
export function loseWriteResponses(
  fake: { addRoute(route: Route<FakeState>): void },
  pending: { ref: number; review: number },
  failure: () => FakeResponse = () => ({ status: 502, body: { message: 'Server Error' } }),
): void {
  const updateRef = gitDataRoutes.find((route) => route.method === 'PATCH')!;
  fake.addRoute(failAfterWork(updateRef, pending, 'ref', failure));
  const createReview = reviewRoutes.find((route) => route.method === 'POST')!;
  fake.addRoute(failAfterWork(createReview, pending, 'review', failure));
}
