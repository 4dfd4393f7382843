// Appends the training loss to the model's first output: softmax cross-entropy against an
// integer `labels` input, or mean squared error against a `target` input.
import { addNode, typeOf } from '../ir/build.js';
import type { Pass } from './pass.js';

export const LOSS = 'loss';

export const addLoss: Pass = {
  name: 'add-loss',
  doc: 'append the loss (--loss cross_entropy|mse) to the first model output',
  run(g, ctx) {
    if (ctx.loss === 'none') return g;
    const pred = g.outputs[0];
    const pt = typeOf(g, pred);
    let label: string;
    if (ctx.loss === 'cross_entropy') {
      // Logits [batch, classes], or [batch, ..., classes] for sequence models: the positions
      // are flattened into the batch and `labels` has the logits' shape without classes.
      if (pt.shape.length < 2) throw new Error(`cross_entropy needs [batch, classes] logits; output '${pred}' is [${pt.shape}]`);
      label = 'labels';
      const lead = pt.shape.slice(0, -1);
      g.values.set(label, { name: label, dtype: 'i64', shape: lead, role: 'input' });
      let scores = pred;
      let flat = label;
      if (lead.length > 1) {
        const rows = lead.reduce((a, b) => a * b, 1);
        scores = addNode(g, 'mpc.View', [pred], { name: `${pred}.rows`, attrs: { shape: [rows, pt.shape[pt.shape.length - 1]] } })[0];
        flat = addNode(g, 'mpc.View', [label], { name: 'labels.rows', attrs: { shape: [rows] } })[0];
      }
      addNode(g, 'SoftmaxCrossEntropyLoss', [scores, flat], { outputNames: [LOSS], attrs: { reduction: 'mean' } });
    } else {
      label = 'target';
      g.values.set(label, { name: label, dtype: pt.dtype, shape: [...pt.shape], role: 'input' });
      addNode(g, 'mpc.MeanSquaredError', [pred, label], { outputNames: [LOSS] });
    }
    g.inputs.push(label);
    // The training step's output is its loss: the model's outputs feed it (predictions come
    // from the inference graph), so nothing computes them for their own sake (an f32 copy of
    // f16 logits).
    g.outputs = [LOSS];
    g.meta.loss = { value: LOSS, kind: ctx.loss, prediction: pred, labels: label };
    g.meta[`declared:${LOSS}`] = 'f32';
    return g;
  },
  check: (g, ctx) => {
    if (ctx.loss === 'none') return [];
    const v = g.values.get(LOSS);
    return v && v.shape.length === 0 ? [] : ['no scalar loss value'];
  },
};
