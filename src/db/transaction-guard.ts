import type { Sql, TransactionSql } from 'postgres';

type Callback = (sql: TransactionSql) => unknown;

/**
 * Keeps postgres.js from writing to the connection of a transaction after that connection
 * closed, which ends the process. postgres.js 3.4.9, the release that Fixwright uses, sets a
 * closed connection's socket to null (3.4.10 does the same). A query sent afterwards on a
 * transaction's reserved connection still schedules a write to that socket, and the write
 * throws a TypeError from a `setImmediate` callback (`nextWrite` in src/connection.js). The
 * rollback or commit that postgres.js sends after the callback ends is such a query, so any
 * transaction whose connection a database restart cut would end the process.
 *
 * postgres.js rejects `begin()` as soon as the connection closes, while the callback may still
 * run. From then on, the callback's queries are rejected here with CONNECTION_CLOSED before
 * they reach postgres.js. The callback's own end is not passed on either, so postgres.js sends
 * no rollback or commit. Each transaction waits one turn of the event loop (`setImmediate`)
 * after its callback ends, so that a close that arrived meanwhile is seen first.
 */
export function guardTransactions(sql: Sql): void {
  const begin = sql.begin.bind(sql) as (options: string, callback: Callback) => Promise<unknown>;
  const guardedBegin = (optionsOrCallback: string | Callback, maybeCallback?: Callback) => {
    const callback = typeof optionsOrCallback === 'function' ? optionsOrCallback : maybeCallback!;
    const options = typeof optionsOrCallback === 'function' ? '' : optionsOrCallback;
    // True once begin() has settled. Before the callback has ended, only a closed connection
    // settles it, and afterwards nothing may use the transaction's connection any more.
    let ended = false;
    const isEnded = () => ended;
    const result = begin(options, (scoped) =>
      endUnlessClosed(() => callback(refuseWhenEnded(scoped, isEnded)), isEnded),
    );
    result.then(
      () => (ended = true),
      () => (ended = true),
    );
    return result;
  };
  sql.begin = guardedBegin as Sql['begin'];
}

/** Returns the error of a query that the guard rejects, which isConnectionError recognises. */
function connectionClosedError(): Error {
  const message =
    'write CONNECTION_CLOSED: the connection of this transaction closed, so the query was not sent';
  return Object.assign(new Error(message), { code: 'CONNECTION_CLOSED' });
}

/**
 * Runs `run` and settles with its outcome one turn of the event loop after it ended, unless
 * `isEnded()` is true by then: the returned promise then never settles.
 */
function endUnlessClosed(run: () => unknown, isEnded: () => boolean): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const settleLater = (settle: () => void) =>
      setImmediate(() => {
        if (!isEnded()) settle();
      });
    new Promise((resolveRun) => resolveRun(run()))
      // postgres.js runs the queries of a callback that returns an array of them.
      .then((value) => (Array.isArray(value) ? Promise.all(value) : value))
      .then(
        (value) => settleLater(() => resolve(value)),
        (error: unknown) => settleLater(() => reject(error)),
      );
  });
}

/**
 * Wraps a transaction's `sql` so that a query, helper call or savepoint started after
 * `isEnded()` turned true throws CONNECTION_CLOSED. A savepoint's callback gets the same
 * guard as the transaction's.
 */
function refuseWhenEnded(scoped: TransactionSql, isEnded: () => boolean): TransactionSql {
  const check = () => {
    if (isEnded()) throw connectionClosedError();
  };
  return new Proxy(scoped, {
    apply(target, thisArgument, args) {
      check();
      return Reflect.apply(target, thisArgument, args);
    },
    get(target, property, receiver) {
      const value: unknown = Reflect.get(target, property, receiver);
      if (property === 'savepoint') {
        return (nameOrCallback: string | Callback, maybeCallback?: Callback) => {
          check();
          const callback = typeof nameOrCallback === 'function' ? nameOrCallback : maybeCallback!;
          const guarded: Callback = (inner) =>
            endUnlessClosed(() => callback(refuseWhenEnded(inner, isEnded)), isEnded);
          return typeof nameOrCallback === 'function'
            ? target.savepoint(guarded)
            : target.savepoint(nameOrCallback, guarded);
        };
      }
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        check();
        return Reflect.apply(value, target, args);
      };
    },
  });
}
