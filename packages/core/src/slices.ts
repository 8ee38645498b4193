import type { Backbone } from '@mm/backbone-gguf';
import type { SliceLayout } from '@mm/encoders';
import { ErrorCode, MmError } from '@mm/errors';
import type { SliceTemplate } from '@mm/projectors';

/**
 * A tiled picture's chunks in prompt order, with the text libmtmd puts around them: `between[i]`
 * precedes `chunks[i]` and `between[chunks.length]` follows the last one.
 */
export interface SlicedMedia<T> {
  chunks: T[];
  between: Int32Array[];
}

/**
 * Lays out the chunks of a tiled picture (`chunks` in the encoder's order: the overview first,
 * then the slices row by row) as mtmd_tokenize does (mtmd.cpp, the llava-uhd branch of add_media):
 * the overview before or after the slices, each slice with its start/end/mid markers, a row end
 * after every row but the last (or after every row), marker tokens looked up in the vocabulary by
 * their exact text. A picture that makes one plain chunk comes back as it is, with no text.
 */
export function layOutSlices<T>(
  backbone: Backbone,
  template: SliceTemplate,
  layout: SliceLayout,
  chunks: readonly T[],
): SlicedMedia<T> {
  const tiled = (layout.gridX > 0 && layout.gridY > 0) || layout.hasOverview;
  if (!tiled) return { chunks: [...chunks], between: [] };
  const nSlices = layout.gridX * layout.gridY;
  const expected = nSlices + (layout.hasOverview ? 1 : 0);
  if (chunks.length !== expected || !layout.hasOverview) {
    throw new MmError(
      ErrorCode.MM_INTERNAL,
      `a ${layout.gridX}x${layout.gridY} slice layout${layout.hasOverview ? ' with an overview' : ''} came with ${chunks.length} chunks`,
    );
  }
  const out: T[] = [];
  const between: Int32Array[] = [];
  let text: number[] = [];
  const lookup = (pieces: readonly string[]) => {
    for (const p of pieces) {
      const t = backbone.lookupToken(p);
      if (t === undefined) {
        throw new MmError(
          ErrorCode.MM_MODEL_MISMATCH,
          `the text model has no token ${JSON.stringify(p)}, which this mmproj's slice layout needs (wrong model pair?)`,
        );
      }
      text.push(t);
    }
  };
  const push = (c: T) => {
    between.push(Int32Array.from(text));
    out.push(c);
    text = [];
  };
  const overview = chunks[0] as T;
  if (template.overviewFirst) {
    lookup(template.overviewStart);
    push(overview);
    lookup(template.overviewEnd);
  }
  if (nSlices > 0) {
    lookup(template.slicesStart);
    for (let y = 0; y < layout.gridY; y++) {
      for (let x = 0; x < layout.gridX; x++) {
        if (template.sliceStart.length > 0) lookup(template.sliceStart);
        else if (template.sliceStartFormat !== '') {
          const s = template.sliceStartFormat
            .replace('%d', String(y + 1))
            .replace('%d', String(x + 1));
          text.push(...backbone.tokenize(s, { addBos: false, parseSpecial: true }));
        }
        push(chunks[1 + y * layout.gridX + x] as T);
        lookup(template.sliceEnd);
        if (x !== layout.gridX - 1) lookup(template.sliceMid);
      }
      if (y !== layout.gridY - 1 || template.rowEndTrail) lookup(template.rowEnd);
    }
    lookup(template.slicesEnd);
  }
  if (!template.overviewFirst) {
    lookup(template.overviewStart);
    push(overview);
    lookup(template.overviewEnd);
  }
  between.push(Int32Array.from(text));
  return { chunks: out, between };
}
