// `shoal user …`: the API's users (admin only): add one with a role, printing its token this once
// (the appliance keeps only its hash, so a lost token is replaced by removing and adding the user),
// list them, remove one.
import type { UserCreated, UserList } from '../../api/views.js';
import { ROLES, type Role } from '../../state/users.js';
import { enc, need, UsageError, type CliValues } from '../args.js';
import type { ApiClient } from '../client.js';
import { formatColumns } from '../table.js';

export async function userCommand(client: ApiClient, sub: string | undefined, args: string[], values: CliValues): Promise<number> {
  switch (sub) {
    case 'add': {
      const name = need(args[0], 'user add needs a name');
      const role = roleOf(values.role);
      const user = await client.request<UserCreated>('POST', '/users', { name, role });
      console.log(`added user ${user.name} (${user.role}); its token, shown only this once (the appliance keeps only its hash):`);
      console.log(user.token);
      return 0;
    }
    case 'list': {
      const { users } = await client.request<UserList>('GET', '/users');
      console.log(formatColumns(['USER', 'ROLE', 'CREATED (UTC)', 'BY'], users.map((u) => [u.name, u.role, u.createdAt.slice(0, 19).replace('T', ' '), u.createdBy])));
      return 0;
    }
    case 'rm': {
      const name = need(args[0], 'user rm needs a name');
      await client.request('DELETE', `/users/${enc(name)}`);
      console.log(`removed user ${name}; its token is refused from now on`);
      return 0;
    }
    default:
      throw new UsageError(`unknown user command "${sub ?? ''}"`);
  }
}

function roleOf(value: unknown): Role {
  if (value === undefined) throw new UsageError(`user add needs --role ${ROLES.join('|')}`);
  if (!(ROLES as readonly unknown[]).includes(value)) throw new UsageError(`"${String(value)}" is not a role: ${ROLES.slice(0, -1).join(', ')} or ${ROLES.at(-1)}`);
  return value as Role;
}
