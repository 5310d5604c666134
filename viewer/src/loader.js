// A Cornerstone image loader for LungPortal's slices: `lungportal:<url>` fetches the URL (the
// session cookie goes along: same origin), decodes it to one value per pixel and hands
// Cornerstone a stack image. Metadata comes from the page's JSON, not from the files.
import { metaData, utilities } from '@cornerstonejs/core';

export const SCHEME = 'lungportal';

// slice.values.encoding -> async (url, slice) => { width, height, values: TypedArray }.
const DECODERS = {
  png8: decodePng8,
  int16: decodeInt16,
};

const slicesById = new Map();

export function imageIdFor(slice) {
  return `${SCHEME}:${slice.values.url}`;
}

// `window` ({ width, center }): the default window/level, in display units.
export function registerSlices(slices, { hounsfield, frameOfReference, window }) {
  for (const slice of slices) {
    slicesById.set(imageIdFor(slice), { slice, hounsfield, frameOfReference, window });
  }
}

async function fetchBlob(url) {
  const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
  if (!response.ok) throw new Error(`could not load ${url}: HTTP ${response.status}`);
  return response.blob();
}

// 8-bit PNG (grey or RGB) -> grey values 0..255. RGB copies of grey slices have R = G = B; a
// truly coloured image is shown by its luma (Rec. 601), since window/level works on one value.
async function decodePng8(url) {
  const bitmap = await createImageBitmap(await fetchBlob(url), {
    colorSpaceConversion: 'none',
    premultiplyAlpha: 'none',
  });
  const { width, height } = bitmap;
  const canvas = document.createElement('canvas');
  canvas.width = width;
  canvas.height = height;
  const context = canvas.getContext('2d', { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  bitmap.close();
  const rgba = context.getImageData(0, 0, width, height).data;
  const values = new Uint8Array(width * height);
  for (let i = 0, j = 0; i < values.length; i += 1, j += 4) {
    const r = rgba[j];
    const g = rgba[j + 1];
    const b = rgba[j + 2];
    values[i] = r === g && g === b ? r : Math.round(0.299 * r + 0.587 * g + 0.114 * b);
  }
  return { width, height, values };
}

// DICOM slices: Hounsfield units as little-endian int16, row by row (cases.files
// slice_hounsfield_response); the size comes from the page's JSON.
async function decodeInt16(url, slice) {
  const buffer = await (await fetchBlob(url)).arrayBuffer();
  const { width, height } = slice;
  if (buffer.byteLength !== width * height * 2) {
    throw new Error(`${url}: expected ${width}×${height} values, got ${buffer.byteLength} bytes`);
  }
  return { width, height, values: new Int16Array(buffer) };
}

// Stored values -> display units (value * slope + intercept), done here once so that
// Cornerstone, the window inputs and the presets all work in the same units.
function rescale(values, slope, intercept) {
  if (slope === 1 && intercept === 0) return values;
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i += 1) out[i] = values[i] * slope + intercept;
  return out;
}

function makeImage(imageId, width, height, values, window) {
  const voxelManager = utilities.VoxelManager.createImageVoxelManager({
    width,
    height,
    numberOfComponents: 1,
    scalarData: values,
    id: imageId,
  });
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < values.length; i += 1) {
    if (values[i] < min) min = values[i];
    if (values[i] > max) max = values[i];
  }
  return {
    imageId,
    minPixelValue: min,
    maxPixelValue: max,
    slope: 1,
    intercept: 0,
    windowCenter: window.center,
    windowWidth: window.width,
    color: false,
    rgba: false,
    numberOfComponents: 1,
    dataType: values.constructor.name,
    rows: height,
    columns: width,
    height,
    width,
    columnPixelSpacing: 1,
    rowPixelSpacing: 1,
    invert: false,
    sizeInBytes: values.byteLength,
    getPixelData: () => voxelManager.getScalarData(),
    voxelManager,
  };
}

export function loadImage(imageId) {
  const entry = slicesById.get(imageId);
  const promise = (async () => {
    if (!entry) throw new Error(`unknown slice ${imageId}`);
    const { url, encoding, slope = 1, intercept = 0 } = entry.slice.values;
    const decode = DECODERS[encoding];
    if (!decode) throw new Error(`slice encoding ${encoding} is not supported`);
    const { width, height, values } = await decode(url, entry.slice);
    return makeImage(imageId, width, height, rescale(values, slope, intercept), entry.window);
  })();
  return { promise, cancelFn: undefined };
}

function metadataProvider(type, imageId) {
  const entry = slicesById.get(imageId);
  if (!entry) return undefined;
  const { slice, hounsfield, frameOfReference } = entry;
  const { width, height, position } = slice;
  switch (type) {
    case 'imagePixelModule':
      return {
        samplesPerPixel: 1,
        photometricInterpretation: 'MONOCHROME2',
        rows: height,
        columns: width,
        bitsAllocated: 8,
        bitsStored: 8,
        highBit: 7,
        pixelRepresentation: 0,
      };
    case 'imagePlaneModule':
      return {
        frameOfReferenceUID: frameOfReference,
        rows: height,
        columns: width,
        imageOrientationPatient: [1, 0, 0, 0, 1, 0],
        rowCosines: [1, 0, 0],
        columnCosines: [0, 1, 0],
        imagePositionPatient: [0, 0, position],
        pixelSpacing: [1, 1],
        rowPixelSpacing: 1,
        columnPixelSpacing: 1,
        sliceThickness: 1,
        sliceLocation: position,
      };
    case 'generalSeriesModule':
      return { modality: hounsfield ? 'CT' : 'OT', seriesInstanceUID: frameOfReference };
    case 'voiLutModule':
      return { windowCenter: [entry.window.center], windowWidth: [entry.window.width] };
    case 'modalityLutModule':
      return { rescaleSlope: 1, rescaleIntercept: 0 };
    default:
      return undefined;
  }
}

export function installMetadata() {
  metaData.addProvider(metadataProvider, 10000);
}
