// Builds src/ into ../static/viewer/ (committed, so that `make run` needs no Node).
import { build } from 'esbuild';

await build({
  entryPoints: { viewer: 'src/main.js' },
  outdir: '../static/viewer',
  bundle: true,
  format: 'esm',
  target: ['es2020'],
  minify: !process.env.VIEWER_DEV, // VIEWER_DEV=1: readable stack traces while debugging
  legalComments: 'linked',
  logLevel: 'info',
  loader: { '.css': 'css' },
  // vtk.js's XML mesh reader needs Node built-ins; the viewer never reads VTK XML (see the stub).
  alias: { xmlbuilder2: './src/stubs/xmlbuilder2.js' },
});
