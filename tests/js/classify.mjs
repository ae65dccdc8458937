// Classify texts with transformers.js's standard pipeline on an exported moohead folder.
//
//   node classify.mjs MODEL_DIR [DTYPE] < texts.json   (a JSON array of strings)
//
// Local files only (no hub access). Prints one JSON object: the dtype, and for each text
// its label, the probability of every label and the token ids the pipeline fed the model
// (its own tokenizer call, padding removed). Used by tests/test_interop.py and
// benchmarks/interop.py.
import { readFileSync } from 'node:fs';
import path from 'node:path';

import { env, pipeline } from '@huggingface/transformers';

const [modelDir, dtype = 'fp32'] = process.argv.slice(2);
if (!modelDir) {
    console.error('usage: node classify.mjs MODEL_DIR [DTYPE] < texts.json');
    process.exit(2);
}
env.allowRemoteModels = false;
env.allowLocalModels = true;
env.useFSCache = false;
env.localModelPath = path.dirname(path.resolve(modelDir)) + path.sep;

const texts = JSON.parse(readFileSync(0, 'utf8'));
const classifier = await pipeline('text-classification', path.basename(path.resolve(modelDir)), {
    dtype,
    local_files_only: true,
});
const numLabels = Object.keys(classifier.model.config.id2label).length;
const results = await classifier(texts, { top_k: numLabels });
// The pipeline's own tokenizer call (text-classification.js: padding and truncation on).
const encoded = classifier.tokenizer(texts, { padding: true, truncation: true });
const ids = encoded.input_ids.tolist();
const mask = encoded.attention_mask.tolist();
const predictions = results.map((ranked, i) => ({
    label: ranked[0].label,
    probabilities: Object.fromEntries(ranked.map((r) => [r.label, r.score])),
    input_ids: ids[i].filter((_, j) => Number(mask[i][j]) === 1).map(Number),
}));
console.log(JSON.stringify({ dtype, predictions }));
await classifier.dispose();
