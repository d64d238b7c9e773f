int nest_codecs_placeholder(void){return 0;}
