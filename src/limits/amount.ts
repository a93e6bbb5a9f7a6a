/**
 * @module limits/amount
 *
 * The one rounding rule for amounts (credits, budgets, balances, charges, usage units): every
 * sum or difference of amounts is rounded to 9 decimal places, and to 15 significant digits
 * once it has more than 6 integer digits (8 decimals from 1e6, 7 from 1e7, …, none from 1e14);
 * from 1e15 on it is left as it is (integers are exact up to 2^53 anyway).
 *
 * Binary doubles cannot hold most decimals: 0.1 + 0.1 + 0.1 is 0.30000000000000004, so a limit
 * of 0.3 refused the third request of 0.1, and 1 - 0.9 read 0.09999999999999998. Rounded so,
 * every figure is the double nearest the decimal a person would write, and prints as it: 15
 * significant digits is what a double holds of every decimal (DBL_DIG), and sums of such
 * amounts come back to them after each step, so the noise never builds up. A request of
 * 0.0000000001 (below the last place) counts as 0.
 *
 * The step is a multiply, a `Math.round` and a divide: no allocation. The Redis Lua scripts
 * mirror it (`round_amount` in `tollbooth/redis/scripts`), tested figure for figure against
 * this function; the SQL stores round a stored sum with {@link roundAmountSql}.
 */

/**
 * `x` rounded to the amount grid: 9 decimals below 1e6 (in magnitude), then 15 significant
 * digits, unchanged from 1e15 (and for Infinity and NaN). Never -0.
 */
export function roundAmount(x: number): number {
  // An integer (requests, most costs and balances) is on the grid already: returned as the
  // small integer it is, so a sum of integers stays one V8 keeps unboxed (the float steps
  // below give a double, which a field or an array element holds as a heap number: an
  // allocation a request). `| 0` also turns -0 into 0.
  const i = x | 0
  if (i === x) return i
  const a = x < 0 ? -x : x
  // `+ 0` turns -0 (a small negative rounded to nothing) into 0.
  if (a < 1e6) return Math.round(x * 1e9) / 1e9 + 0
  if (!(a < 1e15)) return x
  let s = 1e8
  for (let top = 1e7; a >= top; top *= 10) s /= 10
  return Math.round(x * s) / s + 0
}

/**
 * The same rule as SQL over `expr` (a double): `round(expr, 9)` below 1e6, then one decimal
 * less per digit, `expr` itself from 1e15. `numeric` is PostgreSQL's form (its `round` takes
 * a numeric and returns one, cast back to float8); SQLite's `round(X, N)` takes a real.
 */
export function roundAmountSql(expr: string, dialect: 'postgres' | 'sqlite'): string {
  const round = (places: number) =>
    dialect === 'postgres'
      ? `round((${expr})::numeric, ${places})::float8`
      : `round(${expr}, ${places})`
  let sql = `CASE WHEN abs(${expr}) < 1e6 THEN ${round(9)}`
  for (let places = 8, top = 1e7; places >= 0; places--, top *= 10)
    sql += ` WHEN abs(${expr}) < ${top.toExponential().replace('+', '')} THEN ${round(places)}`
  return `${sql} ELSE ${expr} END`
}
