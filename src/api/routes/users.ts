// API users (admin only, by the route table in ../roles.ts): list them, add one with a role (its
// token is in this reply and nowhere else, ever), remove one (its token is refused at once).
import type express from 'express';
import { z } from 'zod';
import { ROLES, UserNameSchema, type User, type UserDirectory } from '../../state/users.js';
import type { UserCreated, UserList, UserView } from '../views.js';
import { writerOf } from './context.js';

const UserInputSchema = z.strictObject({ name: UserNameSchema, role: z.enum(ROLES) });

export function registerUserRoutes(api: express.Router, users: UserDirectory): void {
  api.get('/users', (_req, res) => {
    const list: UserList = { users: users.list().map(userView) };
    res.json(list);
  });

  api.post('/users', async (req, res) => {
    const input = UserInputSchema.parse(req.body);
    const { user, token } = await users.add(input.name, input.role, writerOf(req));
    const created: UserCreated = { ...userView(user), token };
    // The token is a credential: no cache or proxy keeps this reply.
    res.status(201).location(`/api/v1/users/${user.name}`).set('cache-control', 'no-store').json(created);
  });

  api.delete('/users/:name', async (req, res) => {
    await users.remove(req.params.name, writerOf(req));
    res.status(204).end();
  });
}

function userView(user: User): UserView {
  return { name: user.name, role: user.role, createdAt: new Date(user.createdAt).toISOString(), createdBy: user.createdBy };
}
