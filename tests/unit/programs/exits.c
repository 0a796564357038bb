/* Functions whose exits the disassembler must find (built -O2 at test time): two plain
   returns, a tail call into another function, and a tail call through a pointer. */
long (*volatile hook)(long);

__attribute__((noinline)) long two_returns(long x)
{
	if (x > 3)
		return x * 2;
	return x + 1;
}

__attribute__((noinline)) long tail_caller(long x)
{
	if (x == 7)
		return 0;
	return two_returns(x + 1);
}

__attribute__((noinline)) long pointer_tail_caller(long x)
{
	return hook(x);
}

int main(int argc, char **argv)
{
	(void)argv;
	hook = two_returns;
	return (int)(tail_caller(argc) + pointer_tail_caller(argc));
}
