import { defineConfig } from '@playwright/test';
import base from './playwright.config';

// `make bench ONLY=browser`: measurements, not tests, kept out of `make e2e` (which runs
// ./tests). One worker, so loads do not compete with each other for the two cores.
export default defineConfig({
  ...base,
  testDir: './bench',
  fullyParallel: false,
  workers: 1,
  timeout: 300_000,
});
