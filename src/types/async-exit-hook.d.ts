// The parts of async-exit-hook 2.0.1 that src/db/bundled.ts uses.
declare module 'async-exit-hook' {
  interface ExitHook {
    (hook: (done?: () => void) => void): void;
    /** Names of the process events the hook listens to. */
    hookedEvents(): string[];
    /** Removes the hook's listener for one process event. */
    unhookEvent(event: string): void;
  }
  const exitHook: ExitHook;
  export default exitHook;
}
