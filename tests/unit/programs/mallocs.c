/* A program with the malloc family linked in (built -static): the ELF the tracking
   unit tests map into a fake process.  It is never run; its symbols and CFI are used. */
#include <stdlib.h>

void *keep;

int main(void)
{
	void *p = malloc(40);
	keep = calloc(3, 8);
	free(p);
	return 0;
}
