// worker_threads entry of the training data prefetch thread (stream-data.ts). Loads the TypeScript
// side through tsx: workers do not inherit loader hooks that the main thread registered.
import { register } from 'tsx/esm/api';

register();
await import('./stream-worker.ts');
