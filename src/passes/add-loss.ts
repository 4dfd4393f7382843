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
      if (pt.shape.length !== 2) throw new Error(`cross_entropy needs [batch, classes] logits; output '${pred}' is [${pt.shape}]`);
      label = 'labels';
      g.values.set(label, { name: label, dtype: 'i64', shape: [pt.shape[0]], role: 'input' });
      addNode(g, 'SoftmaxCrossEntropyLoss', [pred, label], { outputNames: [LOSS], attrs: { reduction: 'mean' } });
    } else {
      label = 'target';
      g.values.set(label, { name: label, dtype: pt.dtype, shape: [...pt.shape], role: 'input' });
      addNode(g, 'mpc.MeanSquaredError', [pred, label], { outputNames: [LOSS] });
    }
    g.inputs.push(label);
    g.outputs = [LOSS, ...g.outputs];
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
