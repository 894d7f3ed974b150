import { parseArgs } from 'node:util';
import { Demo, DemoStoppedError } from '../demo/demo.ts';

/** Exit codes for a stop before the flow finished: 128 plus the signal number, as shells use. */
const earlyStopExitCodes: Record<string, number> = { SIGINT: 130, SIGTERM: 143 };

/**
 * Runs the demo until SIGINT or SIGTERM, then stops everything it started. Returns -1 so main
 * leaves the process running, and the process exits once the demo has stopped. The exit code
 * is 0 after a signal that came once the whole flow ran, 130 (SIGINT) or 143 (SIGTERM) after
 * an earlier one, and 1 when the demo failed.
 */
export async function runDemoCommand(args: string[]): Promise<number> {
  parseArgs({ args, options: {} });
  const print = (line: string) => process.stdout.write(`${line}\n`);
  const demo = new Demo(process.env, print);
  let stopping = false;
  let completed = false;

  const stopAndExit = (code: number) => {
    stopping = true;
    demo.stop().then(
      () => process.exit(code),
      (error: unknown) => {
        console.error(error instanceof Error ? error.message : String(error));
        process.exit(1);
      },
    );
  };
  const fail = (message: string) => {
    if (stopping) return;
    console.error(message);
    stopAndExit(1);
  };
  const onSignal = (signal: NodeJS.Signals) => {
    // `npm run demo` forwards the terminal's Ctrl-C, so the same stop can arrive twice.
    if (stopping) return;
    print(`Received ${signal}; stopping`);
    if (completed) {
      stopAndExit(0);
      return;
    }
    console.error(`The demo was stopped by ${signal} before it finished.`);
    stopAndExit(earlyStopExitCodes[signal] ?? 1);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('uncaughtException', (error) => fail(`The demo failed: ${error.stack ?? error.message}`));

  try {
    await demo.start();
  } catch (error) {
    if (!(error instanceof DemoStoppedError)) {
      fail(`The demo failed: ${error instanceof Error ? error.message : String(error)}`);
    }
    return -1;
  }
  completed = true;
  void demo.serviceExited().then((reason) => {
    fail(`The service stopped unexpectedly (${reason}). Last service output:\n${demo.serviceOutput()}`);
  });
  return -1;
}
