/* Functions whose exits the disassembler must find (built -O2 at test time): two plain
   returns, a tail call into another function, and a tail call through a pointer; and two
   that read a flag, first thing or after a call. */
long (*volatile hook)(long);
int ready;

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

__attribute__((noinline)) long reads_flag_first(long n, long m)
{
	if (!ready)
		return -1;
	return n * m + 1;
}

__attribute__((noinline)) long calls_before_the_read(long n)
{
	n = hook(n);
	if (!ready)
		return 0;
	return n;
}

int main(int argc, char **argv)
{
	(void)argv;
	hook = two_returns;
	ready = argc;
	return (int)(tail_caller(argc) + pointer_tail_caller(argc) + reads_flag_first(argc, 2) +
		     calls_before_the_read(argc));
}
