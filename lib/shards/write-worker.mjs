// worker_threads entry of the shard writer thread (sink.ts). Loads the TypeScript side through
// tsx: workers do not inherit loader hooks that the main thread registered with module.register().
import { register } from 'tsx/esm/api';

register();
await import('./write-worker.ts');
