#include <iostream>
int main() { std::cout << "headinfer\n"; return 0; }
