// Bundles the demo page with esbuild into web/dist. amazon-chime-sdk-js (CommonJS) pulls in
// AWS SDK code with node built-ins (node:fs, node:https, ...) that the browser never runs, so
// they resolve to an empty module instead of failing the bundle.
import { build } from 'esbuild';
import { builtinModules } from 'node:module';
import { copyFile, mkdir } from 'node:fs/promises';

const nodeBuiltins = new Set([...builtinModules, ...builtinModules.map((m) => `node:${m}`)]);
const emptyNodeBuiltins = {
  name: 'empty-node-builtins',
  setup(b) {
    b.onResolve({ filter: /.*/ }, (args) =>
      nodeBuiltins.has(args.path) ? { path: args.path, namespace: 'empty' } : undefined,
    );
    b.onLoad({ filter: /.*/, namespace: 'empty' }, () => ({ contents: 'module.exports = {};', loader: 'js' }));
  },
};

await mkdir('dist', { recursive: true });
await build({
  entryPoints: ['demo/app.js'],
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'es2020',
  outfile: 'dist/app.js',
  plugins: [emptyNodeBuiltins],
  define: { global: 'globalThis', 'process.env.NODE_ENV': '"production"' },
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
await copyFile('demo/index.html', 'dist/index.html');
console.log('built web/dist (index.html, app.js)');
// `--update-bundle` also refreshes the copy the server binary embeds (web/bundle, committed).
if (process.argv.includes('--update-bundle')) {
  await mkdir('bundle', { recursive: true });
  await copyFile('dist/app.js', 'bundle/app.js');
  await copyFile('dist/index.html', 'bundle/index.html');
  console.log('updated web/bundle from web/dist');
}
