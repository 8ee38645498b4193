import { readGguf, summarizeGguf } from '@mm/gguf';
import { type CliIo, ExitCode, formatBytes, formatCount } from '../io.js';
import { audioPath, audioRows, mmprojPath, mmprojRows } from './families.js';

export const inspectHelp = `mm inspect <file.gguf> [--json] [--tensors]

Reads a GGUF file's header (never its weights) and prints its architecture, parameter count,
tensor table summary and, for an mmproj, the encoders present, projector family, image size
and patch size, then what mm makes of it: its own graph for the family (or why not), fixed
or dynamic resolution (with the pixel and token limits), the markers around each image and
whether the image span is causal; for an audio encoder, its path, input rate, tokens per 30 s
chunk and markers. --tensors lists every tensor.`;

export async function runInspect(
  io: CliIo,
  path: string,
  json: boolean,
  tensors: boolean,
): Promise<number> {
  const file = await readGguf(path);
  const s = summarizeGguf(file);
  const mm = s.mmproj?.hasVisionEncoder ? await mmprojPath(path) : null;
  const mmAudio = s.mmproj?.hasAudioEncoder ? await audioPath(path) : null;
  if (json) {
    const summary = { ...s, ...(mm ? { mm } : {}), ...(mmAudio ? { mmAudio } : {}) };
    const out = tensors
      ? {
          ...summary,
          tensors: file.tensors.map((t) => ({
            name: t.name,
            type: t.type,
            shape: t.shape.map(Number),
          })),
        }
      : summary;
    io.out(`${JSON.stringify(out, null, 2)}\n`);
    return ExitCode.ok;
  }
  const row = (k: string, v: unknown) => `${k.padEnd(20)} ${v ?? '-'}`;
  const lines = [
    row('file', path),
    row('gguf version', s.version),
    row('architecture', s.architecture),
    row('name', s.name),
    row('kind', s.kind),
    row('file type', s.fileTypeName ?? s.fileType),
    row('parameters', `${formatCount(s.parameterCount)} (${s.parameterCount})`),
    row('tensors', `${s.tensorCount}, ${formatBytes(s.tensorBytes)}`),
    ...s.types.map((t) => row(`  ${t.type}`, `${t.tensors} tensors, ${formatBytes(t.bytes)}`)),
    row('metadata keys', s.metadataCount),
  ];
  if (s.text) {
    const t = s.text;
    lines.push(
      row('context length', t.contextLength),
      row('embedding length', t.embeddingLength),
      row('blocks', t.blockCount),
      row('heads (kv)', `${t.headCount ?? '-'} (${t.headCountKv ?? '-'})`),
      row('feed forward', t.feedForwardLength),
      ...(t.expertCount !== undefined
        ? [
            row(
              'experts',
              `${t.expertCount} per block, ${t.expertUsedCount ?? '-'} used per token (mixture of experts)`,
            ),
          ]
        : []),
      row('vocab', `${t.vocabSize ?? '-'} (${t.tokenizerModel ?? '-'})`),
      row('chat template', t.hasChatTemplate ? 'yes' : 'no'),
    );
  }
  if (s.mmproj) {
    const m = s.mmproj;
    const encoders = [
      m.hasVisionEncoder ? 'vision' : null,
      m.hasAudioEncoder ? 'audio' : null,
    ].filter(Boolean);
    lines.push(
      row('encoders', encoders.join(', ') || 'none'),
      row('projector', m.projectorType),
      row('image size', m.imageSize),
      row('patch size', m.patchSize),
      row('vision width', m.visionEmbeddingLength),
      row('vision blocks', m.visionBlockCount),
      row('projection dim', m.projectionDim),
    );
    if (mm) lines.push(...mmprojRows(mm, row));
    if (mmAudio) lines.push(...audioRows(mmAudio, row));
  }
  if (tensors) {
    lines.push('', 'tensors:');
    for (const t of file.tensors)
      lines.push(`  ${t.name.padEnd(36)} ${String(t.type).padEnd(6)} [${t.shape.join(', ')}]`);
  }
  io.out(`${lines.join('\n')}\n`);
  return ExitCode.ok;
}
