#!/usr/bin/env node
// Runs the TypeScript sources through tsx's loader, so the package needs no build step.
// The signal handlers come first. tsx is imported after them, because static imports would be
// loaded before any of this file runs.
import './early-signals.js';

const { register } = await import('tsx/esm/api');
register();
await import('../src/cli/main.ts');
