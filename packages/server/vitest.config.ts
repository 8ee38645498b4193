import { defineConfig } from 'vitest/config';

// Each generation holds a libuv worker thread while it runs: parallel slots need more than
// libuv's default 4. Set here, before the test processes (which inherit it) start.
process.env.UV_THREADPOOL_SIZE ??= '16';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
