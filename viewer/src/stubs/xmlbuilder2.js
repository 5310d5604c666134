// vtk.js's XML mesh reader and writer import xmlbuilder2, which needs Node's `url` and `events`.
// The viewer reads no VTK XML files, so the bundle gets this stand-in instead.
export function create() {
  throw new Error('VTK XML files are not supported in the LungPortal viewer');
}
