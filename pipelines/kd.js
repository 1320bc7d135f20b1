#!/usr/bin/env node
// Launcher for `npx kd`: runs the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';
register();
await import('./kd.ts');
