import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { tinyShapesPaths } from '@mm/testing';

export const tiny = tinyShapesPaths();
export const testsetDir = tiny.testset;

export interface AnswerItem {
  image: string;
  questions: { kind: string; question: string; answer: string }[];
}

export function answers(dir: string): AnswerItem[] {
  return JSON.parse(readFileSync(join(dir, 'answers.json'), 'utf8')).items;
}

export function ask(image: string, question: string) {
  return [
    {
      role: 'user',
      content: [
        { type: 'image' as const, image },
        { type: 'text' as const, text: question },
      ],
    },
  ];
}
