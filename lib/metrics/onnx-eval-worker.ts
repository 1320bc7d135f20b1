// Child process of evaluateOnnxIsolated: argv = model path, JSON options; prints the result as JSON.
import { evaluateOnnx } from './onnx-eval.js';

try {
  const result = await evaluateOnnx(process.argv[2], JSON.parse(process.argv[3]));
  process.stdout.write(JSON.stringify(result) + '\n');
} catch (e) {
  process.stderr.write(`${(e as Error).message}\n`);
  process.exitCode = 1;
}
