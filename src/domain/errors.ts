// The error the vocabulary throws for input that breaks one of its rules; the API answers it
// with 400. On its own so that modules without zod (the dashboard's selector) can throw it.
export class ValidationError extends Error {}
